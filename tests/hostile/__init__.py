"""Hostile and broken inputs, generated at test time (no binary blobs are checked in).

`formats` crafts files byte by byte (pickles, zips, protobuf, safetensors headers), `catalogue` builds every
case from valid seed files written by the frameworks themselves, and `driver` runs a batch of cases through
`automap.cli.main` in a child process under time and memory limits. `python -m tests.hostile.catalogue DIR`
writes the whole catalogue to DIR for a manual look.
"""
