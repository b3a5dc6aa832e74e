"""The inference engine: from two parameter tables to a `NameMapping` with a confidence per pair.

Data flow: names are tokenised (`names`), both sides become module-hierarchy graphs (`graph`), shape
relations and fused pieces give the candidates (`shapes`, `decompose`), features score every candidate
(`features`), the Hungarian assignment picks pairs and confidences come from exchange margins (`solver`),
and `inference` runs the passes and builds the result. Reads `io`'s tables; imports no framework.
"""
