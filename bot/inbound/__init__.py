"""Between the network and Bolt: the HTTP edge, the replay guard, Socket Mode, the drain on shutdown."""
