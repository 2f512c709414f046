"""A study's claims get a verdict per rate: holds, does not hold, or cannot tell; the report shows them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from record_factory import write_claim_records

from bench import store
from reports.claims import CANNOT_TELL, FAILS, HOLDS, claim_verdicts

CLAIM = {
    "better": "a",
    "worse": "b",
    "metric": "psnr",
    "min_difference": 0,
    "sequence": "s",
    "budget": "study",
}
REVERSE = {**CLAIM, "better": "b", "worse": "a", "why": "the reverse"}


def _verdicts(folder: Path, claims: list[dict]) -> list:
    return claim_verdicts(store.load_results(folder).finished, claims)


@pytest.mark.parametrize(
    ("differences", "expected"),
    [
        ({10: 0.9, 11: 1.0, 12: 1.1}, HOLDS),
        ({10: -0.9, 11: -1.0, 12: -1.1}, FAILS),  # the order reversed
        ({10: -0.1, 11: 0.1, 12: 0.0}, CANNOT_TELL),  # a tie, within the seeds' noise
        ({10: -0.5, 11: 0.5, 12: 1.5}, CANNOT_TELL),  # a mean above zero, but the seeds spread across it
    ],
)
def test_a_verdict_follows_the_interval(tmp_path: Path, differences: dict, expected: str) -> None:
    (verdict,) = _verdicts(write_claim_records(tmp_path, CLAIM, differences), [CLAIM])
    assert verdict.verdict == expected and verdict.low <= verdict.mean <= verdict.high
    assert verdict.seeds == "paired over seeds 10, 11, 12"


def test_a_rate_whose_records_trained_in_two_precisions_says_so(tmp_path: Path) -> None:
    same = write_claim_records(
        tmp_path / "same", CLAIM, {10: 1.0, 11: 1.1}, precision={"a": "fp32", "b": "fp32"}
    )
    assert _verdicts(same, [CLAIM])[0].seeds == "paired over seeds 10, 11"
    mixed = write_claim_records(
        tmp_path / "mixed", CLAIM, {10: 1.0, 11: 1.1}, precision={"a": "fp32", "b": "bf16"}
    )
    assert _verdicts(mixed, [CLAIM])[0].seeds == "paired over seeds 10, 11; trained in bf16 and fp32"


def test_a_positive_minimum_difference_needs_the_whole_interval_above_it(tmp_path: Path) -> None:
    results = write_claim_records(tmp_path, CLAIM, {10: 0.45, 11: 0.5, 12: 0.55})
    assert [v.verdict for v in _verdicts(results, [{**CLAIM, "min_difference": 0.3}])] == [HOLDS]
    assert [v.verdict for v in _verdicts(results, [{**CLAIM, "min_difference": 0.5}])] == [CANNOT_TELL]
    assert [v.verdict for v in _verdicts(results, [{**CLAIM, "min_difference": 0.7}])] == [FAILS]
    # no advantage at all (the better one's records are the worse one's): an advantage claim does not hold
    tie = write_claim_records(tmp_path / "tie", CLAIM, {10: 0.0, 11: 0.0, 12: 0.0})
    assert [v.verdict for v in _verdicts(tie, [{**CLAIM, "min_difference": 0.3}])] == [FAILS]


def test_a_claim_and_its_reverse_are_one_verdict_per_rate(tmp_path: Path) -> None:
    write_claim_records(tmp_path, CLAIM, {10: 1.0, 11: 1.1, 12: 0.9}, bpp=0.1)
    write_claim_records(tmp_path, CLAIM, {10: -1.0, 11: -1.1, 12: -0.9}, bpp=0.4)
    verdicts = _verdicts(tmp_path, [CLAIM, REVERSE])
    assert [(v.bpp, v.verdict) for v in verdicts] == [(0.1, HOLDS), (0.4, FAILS)]


def test_a_claim_without_records_says_why(tmp_path: Path) -> None:
    write_claim_records(tmp_path, CLAIM, {10: 1.0})
    (verdict,) = _verdicts(tmp_path, [{**CLAIM, "worse": "zz"}])
    assert verdict.mean is None and "no psnr records of 'zz'" in verdict.verdict


def test_the_report_judges_the_folders_claims(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import main

    results = tmp_path / "results"
    write_claim_records(results, CLAIM, {10: 1.0, 11: 1.1, 12: 0.9}, bpp=0.1, match="epochs")
    write_claim_records(results, CLAIM, {10: -1.0, 11: -1.1, 12: -0.9}, bpp=0.1, match="time")
    claims = [
        {**CLAIM, "match": "epochs", "why": "a beats b"},
        {**CLAIM, "match": "time", "why": "a beats b"},
    ]
    (results / "claims.yaml").write_text(yaml.safe_dump({"claims": claims}))
    assert main(["report", "--results", str(results)]) == 0
    html = (results / "report.html").read_text()
    summary = (results / "summary.md").read_text()
    assert 'id="claims-table"' in html and "a beats b" in html
    rows = [line for line in summary.splitlines() if line.startswith("| a - b >= +0")]
    assert len(rows) == 2 and rows[0].endswith("| holds |") and rows[1].endswith("| does not hold |")
    assert "| epochs |" in rows[0] and "| time |" in rows[1] and "90 % interval" in summary
    # another file, named on the command line, replaces the folder's
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"claims": [{**CLAIM, "match": "time", "better": "b", "worse": "a"}]}))
    assert main(["report", "--results", str(results), "--claims", str(other)]) == 0
    rows = [line for line in (results / "summary.md").read_text().splitlines() if line.startswith("| b - a")]
    assert len(rows) == 1 and rows[0].endswith("| holds |")


def test_a_deterministic_anchor_meets_each_seed_of_the_method(tmp_path: Path) -> None:
    """A codec's one record (seed 0) against a method's seeds 10-12: the method's spread gives the interval."""
    write_claim_records(tmp_path, {**CLAIM, "worse": "unused"}, {10: 1.0, 11: 1.2, 12: 0.8})
    write_claim_records(tmp_path, {**CLAIM, "better": "unused-too"}, {0: 0.0})  # b: one record, 25.0 dB
    (verdict,) = _verdicts(tmp_path, [CLAIM])
    assert verdict.seeds == "seeds 10, 11, 12 against b's one record"
    assert verdict.mean == pytest.approx(2.1) and verdict.low < 2.0 < 2.3 < verdict.high
    assert verdict.verdict == HOLDS


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[1] / "docs" / "study_records").glob("*/claims.yaml"))
)
def test_the_studies_claims_files_load_and_name_real_methods(path: Path) -> None:
    from bench import registry
    from reports.claims import load_claims

    claims = load_claims(path)
    assert claims
    for claim in claims:
        for side in ("better", "worse"):
            assert claim[side].split("[")[0] in registry.names(), (path, claim[side])
