"""The real-port corpus: model pairs built by third-party packages of both frameworks, truth proven by running.

`generate` (run in the third-party environment of `env.sh`) writes listings and proven truth under
tests/data/realports; `corpus.load_corpus` reads them back with automap alone, no model package needed.
"""
