"""seizurewatch: real-time seizure warning daemon.

Data flows one way:
    source (EDF replay | LSL inlet) -> preprocess -> ring buffer -> model -> decision -> sinks

The public Python API is ``seizurewatch.api`` (what the README's examples import); every other module is
internal: its names may move between releases.
"""

__version__ = "0.1.0"
