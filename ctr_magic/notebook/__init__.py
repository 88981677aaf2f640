"""The notebook layer: the ``%ctr`` / ``%%ctr`` magics, their DataFrame listings and widgets.

- ``magics/``: the magic (``core``), its argument declarations (``parsing``) and one ``cmd_*``
  module per command group; ``%load_ext ctr_magic`` calls :func:`magics.load_ipython_extension`.
- ``frames``: contract records as pandas DataFrames; ``widgets/``: pull/push progress and the live
  views (dashboard, exec console, stats chart); ``stats``: the ``%ctr stats`` DataFrame;
  ``lock``: the ``ctr-lock.json`` file of ``%ctr lock``.

Nothing here is imported until a notebook loads the extension; pandas and ipywidgets load on first use.
"""
