"""The three Dockerfiles are generated from images/templates/ (one build stage for all three): the committed
files must be what the templates make, their stages named alike, and the naive variant must find its layers
by instruction whatever the comments say."""

import re

from images import dockerfiles
from images.variants import PROJECT_IMAGES, VARIANTS, naive_order

STAGE = re.compile(r"^FROM \S+ AS (\S+)$", re.MULTILINE)


def test_the_committed_dockerfiles_are_what_the_templates_make():
    stale = [path.name for path in dockerfiles.stale()]
    assert stale == [], (f"{', '.join(stale)} differ from what images/templates/ makes: edit the templates, run "
                         f"`{dockerfiles.REGENERATE}` and commit the Dockerfiles it writes")


def test_every_dockerfile_has_the_one_build_stage_and_names_its_image_runtime():
    build = (dockerfiles.TEMPLATES / "build.template").read_text()
    for variant in PROJECT_IMAGES:
        text = VARIANTS[variant].dockerfile.read_text()
        stages = STAGE.findall(text)
        assert text.count(build) == 1, variant
        assert stages[0] == "build" and stages[-1] == "runtime", (variant, stages)
        assert len(stages) == len(re.findall(r"^FROM ", text, re.MULTILINE)), f"{variant}: a stage has no name"


def test_the_naive_variant_finds_the_dependency_layer_by_instruction_not_by_comment():
    slim = VARIANTS["slim"].dockerfile_text()
    reworded = re.sub(r"^# Dependencies first:.*$", "# Any other words.", slim, flags=re.MULTILINE)
    assert reworded != slim
    naive = naive_order(reworded)
    assert "# Any other words." not in naive
    assert naive.index("COPY . .") < naive.index("pip install") and "COPY service/" not in naive
