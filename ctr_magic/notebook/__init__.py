"""The notebook layer: what a person sees (widgets, frames, static renderings) over the Service."""
