import os

import pytest
from hypothesis import settings

from tests.charter_helpers import ALICE, Knobs, scaled_charter

# Property tests are derandomized by default so that CI is reproducible; HYPOTHESIS_PROFILE=explore searches more.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", derandomize=False, deadline=None, print_blob=True, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=["alice-2007", "scaled"])
def k(request) -> Knobs:
    """The shipped charter and the same charter scaled down to seconds: a scenario written with the knobs'
    durations must behave the same under both (SPEC section 7)."""
    return Knobs(ALICE if request.param == "alice-2007" else scaled_charter())
