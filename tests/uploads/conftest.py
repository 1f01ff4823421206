from __future__ import annotations

import pytest

from tests.uploads.samples import make_samples


@pytest.fixture(scope="session")
def samples(tmp_path_factory) -> dict[str, bytes]:
    return make_samples(tmp_path_factory.mktemp("samples"))
