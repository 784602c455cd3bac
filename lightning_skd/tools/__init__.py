"""Tools around the library: the demo (``make demo``), the detection demo and table, backbone export's command."""
