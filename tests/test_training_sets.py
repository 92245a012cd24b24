"""The audio training set stays disjoint from evaluation and reproducible across its versions; the validation
set stays disjoint from both.

The build script needs apt-get to synthesise anything, but which clip speaks which sentence in which voice is
decided by plain Python (``speech_jobs``), and that is what keeps training and evaluation apart.
"""

import importlib
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
pytestmark = pytest.mark.skipif(not Path("/usr/share/common-licenses/GPL-3").exists(),
                                reason="the sentences come from Debian's /usr/share/common-licenses")


@pytest.fixture(scope="module")
def build():
    sys.path.insert(0, str(SCRIPTS))
    try:
        yield importlib.import_module("build_audio_data")
    finally:
        sys.path.remove(str(SCRIPTS))


@pytest.fixture(scope="module")
def validation(build):
    return importlib.import_module("build_validation_data")  # on the path ``build`` holds open


def test_no_training_clip_speaks_an_evaluation_sentence_or_voice(build):
    held_out_voices = set(build.VOICES) | {build.FLITE_EVAL_VOICE}
    for engine, voice, text in build.speech_jobs(2):
        assert text not in build.SENTENCES
        assert voice.split("+")[0] not in held_out_voices, (engine, voice)
        assert "slt" not in voice


def test_the_first_set_is_the_second_sets_prefix_so_old_stages_stay_reproducible(build):
    first, second = build.speech_jobs(1), build.speech_jobs(2)
    assert len(first) == 453  # what stages 1 and 2 of the shipped audio weights trained on
    assert second[:len(first)] == first
    voices = {(engine, voice) for engine, voice, _ in second}
    assert len(second) == len(voices) * build.SENTENCES_PER_VOICE  # every voice complete in set 2
    assert {voice for engine, voice in voices if engine == "festival"} == set(build.FESTIVAL_VOICES)


def test_validation_clips_share_no_voice_or_sentence_with_training_or_evaluation(build, validation):
    planned = validation.jobs()
    training = build.speech_jobs(2)
    assert len(planned) == len(set(planned)) == 11 * validation.SENTENCES_PER_VOICE
    assert not {text for *_, text in planned} & ({text for *_, text in training} | set(build.SENTENCES))
    assert not {(engine, voice.split("+")[0]) for engine, voice, _ in planned} & (
        {(engine, voice.split("+")[0]) for engine, voice, _ in training}
        | {("espeak", voice) for voice in build.VOICES} | {("flite", build.FLITE_EVAL_VOICE)})
    validation.check_disjoint(planned)
    with pytest.raises(SystemExit, match="overlap"):  # the script's own guard catches a voice that leaks
        validation.check_disjoint(planned + [training[0]])
