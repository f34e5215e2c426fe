"""Side-by-side benchmarks of segdl against aria2c, axel and curl, on loopback."""
