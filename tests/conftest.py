import pytest

from verl_xrpo.toy.tokenizer import build_toy_tokenizer


@pytest.fixture(scope="session")
def toy_tokenizer():
    return build_toy_tokenizer()
