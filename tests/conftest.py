import pytest

from recipe.xrpo.scale_model.tokenizer import build_toy_tokenizer


@pytest.fixture(scope="session")
def toy_tokenizer():
    return build_toy_tokenizer()
