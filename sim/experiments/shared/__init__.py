"""Code two or more experiments share (no experiment of its own: nothing here registers)."""
