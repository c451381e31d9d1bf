"""seizurewatch: real-time seizure warning daemon.

Data flows one way:
    source (EDF replay | LSL inlet) -> preprocess -> ring buffer -> model -> decision -> sinks
"""

__version__ = "0.1.0"
