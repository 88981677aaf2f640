"""The Docker Engine API backend: ``DockerService`` (also the engine under ``AppleService``)."""
