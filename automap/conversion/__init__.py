"""Applying a mapping: plan and checks, the streaming writer, and the read-back verification of the output.

Named `conversion` rather than `convert` so that the package never shadows the public function
`automap.convert`. Imports `io` and (only when a mapping must be inferred) `engine`.
"""
