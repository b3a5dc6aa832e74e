"""Name tokens: splitting, lexicon classes, compound splitting against the other side, IDF weights, number keys."""

from __future__ import annotations

import pytest

from automap.engine.names import TokenWeights, Vocabulary, number_contexts, split_component, tokenize


@pytest.mark.parametrize(
    ("component", "pieces"),
    [
        ("weight_ih_l0_reverse", ["weight", "ih", "l", "0", "reverse"]),
        ("convBlock2", ["conv", "block", "2"]),
        ("HTTPServer", ["http", "server"]),
        ("layer1", ["layer", "1"]),
        ("down-sample", ["down", "sample"]),
        ("0", ["0"]),
        ("", []),
    ],
)
def test_split_component(component: str, pieces: list[str]) -> None:
    assert split_component(component) == pieces


def test_tokenize_separates_leaf_path_numbers_and_raw_words() -> None:
    tokens = tokenize("encoder.layer.3.attention.self.query.weight")
    assert tokens.numbers == (3,)
    assert tokens.words == (("encoder",), ("layer",), (), ("attention",), ("self",), ("query",), ("weight",))
    # raw words first, then the lexicon class ids of the words that belong to a class
    assert tokens.leaf == ("weight", "=weight")
    assert tokens.path[:2] == ("encoder", "=encoder")
    assert {"layer", "=layers", "attention", "=attention", "self", "query", "=query"} <= set(tokens.path)
    assert not any(t.isdigit() for t in tokens.leaf + tokens.path)


@pytest.mark.parametrize(
    ("torch_name", "mindspore_name", "shared_class"),
    [
        ("bn.weight", "bn.gamma", "=weight"),
        ("bn.bias", "bn.beta", "=bias"),
        ("bn.running_mean", "bn.moving_mean", "=running_mean"),
        ("bn.running_var", "bn.moving_variance", "=running_var"),
        ("embed.weight", "embed.embedding_table", "=weight"),
    ],
)
def test_lexicon_spellings_of_one_concept_share_a_class_id(
    torch_name: str, mindspore_name: str, shared_class: str
) -> None:
    assert shared_class in tokenize(torch_name).leaf
    assert shared_class in tokenize(mindspore_name).leaf
    # without the lexicon the two leaves keep only their raw words
    plain_torch, plain_ms = tokenize(torch_name, lexicon=False).leaf, tokenize(mindspore_name, lexicon=False).leaf
    assert not any(t.startswith("=") for t in plain_torch + plain_ms)


def test_gamma_and_beta_fall_in_different_classes() -> None:
    assert "=bias" not in tokenize("norm.gamma").leaf
    assert "=weight" not in tokenize("norm.beta").leaf


def test_module_names_of_one_concept_share_a_class_id() -> None:
    dense, linear = tokenize("blocks.0.dense.weight"), tokenize("layers.0.linear.weight")
    assert "=linear" in dense.path and "=linear" in linear.path
    assert "=layers" in dense.path and "=layers" in linear.path


def test_compound_is_split_into_the_words_the_other_side_uses() -> None:
    other = Vocabulary(["attn.q.weight", "attn.k.weight", "attn.v.weight"])
    assert other.segment("qkv") == ("q", "k", "v")
    assert other.segment("attn") == ("attn",)  # a word the other side uses stays whole
    fused = tokenize("blocks.0.attn.qkv.weight", other)
    assert fused.words[3] == ("q", "k", "v")
    assert {"=query", "=key", "=value"} <= set(fused.path)


def test_compound_stays_whole_when_the_other_side_lacks_its_pieces() -> None:
    other = Vocabulary(["attn.x.weight"], lexicon=False)
    assert other.segment("qkv") == ("qkv",)


def test_long_words_split_only_into_multi_letter_words() -> None:
    other = Vocabulary(["layer.down.sample.weight", "a.x.weight"], lexicon=False)
    assert other.segment("downsample") == ("down", "sample")
    # single letters may only build short words (qkv, wq); "xxxxxxx" is not seven x's
    assert other.segment("xxxxxxx") == ("xxxxxxx",)


def test_lexicon_words_count_as_known_for_splitting() -> None:
    # `w` and `q` are lexicon spellings (weight, query), so `wq` splits even when the other side spells neither
    assert Vocabulary(["layers.0.attention.query.weight"]).segment("wq") == ("w", "q")
    assert Vocabulary(["layers.0.attention.query.weight"], lexicon=False).segment("wq") == ("wq",)


def test_token_weights_favour_rare_tokens() -> None:
    source = [tokenize(n) for n in ("a.fc.weight", "b.fc.weight", "c.fc.weight", "head.proj.weight")]
    target = [tokenize(n) for n in ("a.fc.weight", "b.fc.weight", "c.fc.weight", "head.proj.weight")]
    weights = TokenWeights(source, target)
    assert weights("head") > weights("fc") > weights("weight")
    assert weights("never_seen") > 0


def test_number_contexts_key_numbers_by_what_they_count() -> None:
    assert number_contexts("layer1.0.bn2.weight") == {("=layers",): 1, ("=layers", "[]"): 0, ("=norm",): 2}
    # the same slots spelled another way get the same keys, so their numbers are comparable
    assert number_contexts("blocks.3.fc1.weight") == number_contexts("layers.3.dense1.weight")


def test_number_contexts_of_different_nestings_share_no_key() -> None:
    left = number_contexts("conv1.convs.0.weight")
    right = number_contexts("down1.maxpool_conv.1.double_conv.4.weight")
    assert set(left) & set(right) == set()


def test_number_contexts_without_lexicon_keep_raw_words() -> None:
    assert number_contexts("layer1.0.bn2.weight", lexicon=False) == {("layer",): 1, ("layer", "[]"): 0, ("bn",): 2}


def test_number_contexts_count_second_numbers_in_a_word_separately() -> None:
    assert number_contexts("stage2x3.weight") == {("=layers", "x"): 2, ("=layers", "x", "@1"): 3}
