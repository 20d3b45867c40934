"""Real prompt sets that become Safe-CB rounds: I2P (`i2p`), CoPro-style pairs (`copro`), safe
rewrites proposed by the model itself (`rewrite`), and the rounds built from them (`rounds`)."""
