"""The inference engine: from two parameter tables to a `NameMapping` with a confidence per pair.

Data flow: names are tokenised (`names`), both sides become module-hierarchy graphs (`graph`), shape
relations and fused pieces give the matchable nodes and candidate pairs (`shapes`, `sides`), features score
every candidate (`features`), the Hungarian assignment picks pairs and confidences come from exchange
margins (`solver`). `inference` is the entry point: it sets pinned pairs aside (`pins`), cuts large models
into blocks (`decompose`), pairs modules by content before anything is matched (`seeds`), runs the passes,
each fed what the previous one's confident pairs showed (`passes`), orders the pieces of fused tensors
(`fused`) and builds the `Match` records (`result`). Reads `io`'s tables; imports no framework.
"""
