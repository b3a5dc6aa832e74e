"""automap's benchmarks: the accuracy zoo (`benchmarks.zoo`) and performance measurements."""
