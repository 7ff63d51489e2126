"""The synthetic clinic: determinism, schemas, planted bad rows, expected counts and habits.

The files are re-read here with the standard library (csv, json, zipfile + openpyxl), not with
the generator's own code, so a row number or a count that the generator gets wrong shows up.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from datetime import date

import numpy as np
import openpyxl
import pandas as pd
import pytest

from backcare_analytics.protocol import load_protocol
from backcare_analytics.schemas import Pain, Patients, Sessions, validate
from backcare_analytics.synth import SynthConfig, check_clinic, generate_clinic, simulate
from backcare_analytics.synth.exports import MISSPELLED
from backcare_analytics.synth.truth import VERDICTS


@pytest.fixture(scope="module")
def clinic():
    # Long enough for dropouts (>= 21 days before the end) and both March DST changes.
    return simulate(
        SynthConfig(patients=40, weeks=10, seed=11, bad_share=0.03, start=date(2026, 2, 9))
    )


def _canon(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def read_rows(name: str, data: bytes) -> dict[int, dict[str, str]]:
    """Every data row of an export file by its contract row number, cells as text ('' = blank)."""
    if name.endswith(".xlsx"):
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
        rows = list(wb.worksheets[0].iter_rows(values_only=True))
        head = [_canon(h) for h in rows[0]]
        out = {}
        for k, r in enumerate(rows[1:], start=2):
            out[k] = {h: "" if v is None else str(v) for h, v in zip(head, r, strict=False)}
        return out
    text = data.decode("utf-8-sig")
    if name.endswith((".jsonl", ".ndjson")):
        recs = {k: json.loads(line) for k, line in enumerate(text.splitlines(), start=1) if line}
    elif name.endswith(".json"):
        doc = json.loads(text)
        recs = dict(enumerate(doc["records"] if isinstance(doc, dict) else doc, start=1))
    else:
        delim = next(d for d in ("\t", ";", ",") if d in text.splitlines()[0])
        reader = list(csv.reader(io.StringIO(text, newline=""), delimiter=delim))
        head = [_canon(h) for h in reader[0]]
        return {k: dict(zip(head, r, strict=True)) for k, r in enumerate(reader[1:], start=2)}

    def txt(v):
        if v is None:
            return ""
        if isinstance(v, bool):
            return str(v).lower()
        return str(v)

    return {k: {h: txt(v) for h, v in r.items()} for k, r in recs.items()}


def test_same_seed_same_bytes_and_other_seed_differs():
    cfg = SynthConfig(patients=6, weeks=3, seed=5)
    a, b = simulate(cfg), simulate(cfg)
    assert a.files == b.files
    assert json.dumps(a.truth) == json.dumps(b.truth)
    c = simulate(SynthConfig(patients=6, weeks=3, seed=6))
    assert a.files.keys() != c.files.keys() or any(a.files[k] != c.files.get(k) for k in a.files)


def test_generate_writes_identical_folders(tmp_path):
    cfg = SynthConfig(patients=5, weeks=2, seed=3)
    s1 = generate_clinic(cfg, tmp_path / "a")
    s2 = generate_clinic(cfg, tmp_path / "b")
    assert s1 == s2
    files_a = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    files_b = sorted(
        p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file()
    )
    assert files_a == files_b and len(files_a) == s1.files + 1  # + ground_truth.json
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert check_clinic(tmp_path / "a").ok
    victim = next((tmp_path / "a" / "exports").glob("*sessions*"))
    victim.write_bytes(victim.read_bytes() + b"\n")
    assert not check_clinic(tmp_path / "a").ok


def test_adding_patients_keeps_earlier_patients():
    small = simulate(SynthConfig(patients=3, weeks=2, seed=9))
    big = simulate(SynthConfig(patients=5, weeks=2, seed=9))
    for name, data in small.files.items():
        if "patients.csv" not in name:
            assert big.files[name] == data, name


def test_clean_frames_match_the_clean_schemas(clinic):
    validate(clinic.sessions, Sessions, what="synthetic sessions")
    validate(clinic.pain, Pain, what="synthetic pain")
    validate(clinic.patients, Patients, what="synthetic patients")
    assert str(clinic.sessions["performed_at"].dtype) == "datetime64[us, UTC]"
    assert clinic.patients["patient_id"].str.startswith("DEMO-").all()


def test_every_planted_bad_row_is_listed_and_holds_the_bad_value(clinic):
    planted = sum(int(r["outcome"].eq("rejected").sum()) for r in clinic.export_rows.values())
    bad = clinic.truth["bad_rows"]
    assert len(bad) == planted > 0
    assert {b["bad_kind"] for b in bad} >= {
        "pain_out_of_range", "non_numeric_pain", "misspelled_exercise", "missing_patient_id",
        "unparseable_time", "in_file_duplicate",
    }  # fmt: skip
    parsed = {}
    for b in bad:
        rows = parsed.setdefault(b["file"], read_rows(b["file"], clinic.files[b["file"]]))
        cell = rows[b["row"]][b["column"]]
        if b["bad_kind"] == "in_file_duplicate":
            # Another row of the same file carries the same record with a different value.
            key_cols = [c for c in ("session_id", "performed_at", "recorded_at", "exercise", "side")
                        if c in rows[b["row"]]]  # fmt: skip
            twins = [
                r for k, r in rows.items()
                if k != b["row"] and all(r[c] == rows[b["row"]][c] for c in key_cols)
            ]  # fmt: skip
            assert twins and all(t[b["column"]] != cell for t in twins), b
            assert b["reason"] == "duplicate_in_file"
        else:
            assert cell == b["value"], (b, cell)
    reasons = {b["bad_kind"]: b["reason"] for b in bad}
    assert reasons["pain_out_of_range"] == "out_of_range"
    assert reasons["misspelled_exercise"] == "unknown_exercise"


def test_misspellings_match_no_exercise():
    proto = load_protocol()
    for ex_id, wrong in MISSPELLED.items():
        assert proto.resolve_exercise(wrong) is None, wrong
        assert proto.suggest_exercise(wrong) == ex_id, wrong


def test_expected_counts_add_up_and_match_an_independent_replay(clinic):
    files = clinic.truth["files"]
    assert [f["file"] for f in files] == list(clinic.files)
    bad_per_file = Counter(b["file"] for b in clinic.truth["bad_rows"])
    bad_rows = {(b["file"], b["row"]) for b in clinic.truth["bad_rows"]}
    seen: dict[tuple[str, str], set] = defaultdict(set)
    for f in files:
        rows = read_rows(f["file"], clinic.files[f["file"]])
        assert f["rows_read"] == len(rows), f["file"]
        assert f["rows_read"] == f["accepted"] + f["rejected"] + f["duplicates"]
        assert f["rejected"] == bad_per_file.get(f["file"], 0)
        if f["kind"] == "patients":
            continue
        # A good row whose full content appeared in an earlier file of the patient is a duplicate.
        store = seen[(f["kind"], f["patient_id"])]
        dups = 0
        for k, r in rows.items():
            if (f["file"], k) in bad_rows:
                continue
            content = tuple(sorted(r.items()))
            dups += content in store
            store.add(content)
        assert dups == f["duplicates"], f["file"]
    totals = clinic.truth["totals"]
    assert totals["sessions"]["stored"] == len(clinic.sessions)
    assert totals["pain"]["stored"] == len(clinic.pain)
    assert sum(f["duplicates"] for f in files) > 0
    assert clinic.truth["edits"], "some re-exported records come back edited"


def test_edits_are_later_versions_of_an_earlier_row(clinic):
    for e in clinic.truth["edits"]:
        new = read_rows(e["file"], clinic.files[e["file"]])[e["row"]]
        old = read_rows(e["previous_file"], clinic.files[e["previous_file"]])[e["previous_row"]]
        assert e["previous_file"] < e["file"]
        time_col = "performed_at" if e["kind"] == "sessions" else "recorded_at"
        assert new[time_col] == old[time_col]
        assert new != old and new["updated_at"] != old["updated_at"]


def test_stored_rows_come_from_the_files(clinic):
    hashes = {f["sha256"] for f in clinic.truth["files"]}
    assert set(clinic.sessions["source_file"]) <= hashes
    assert set(clinic.pain["source_file"]) <= hashes


def test_formats_and_time_styles_vary(clinic):
    exts = {name.rsplit(".", 1)[1] for name in clinic.files}
    assert {"csv", "json", "xlsx"} <= exts and exts & {"jsonl", "ndjson"}
    texts = b"".join(d for n, d in clinic.files.items() if not n.endswith(".xlsx"))
    assert b"\xef\xbb\xbf" in texts  # some CSV files with a BOM
    assert b"+01:00" in texts and b"+02:00" in texts  # Amsterdam before and after 29 March
    assert b"-05:00" in texts and b"-04:00" in texts  # New York before and after 8 March
    assert b'"records"' in texts


def test_xlsx_metadata_is_fixed_and_holds_no_formulas(clinic):
    import zipfile

    names = [n for n in clinic.files if n.endswith(".xlsx")]
    assert names
    for n in names[:10]:
        with zipfile.ZipFile(io.BytesIO(clinic.files[n])) as zf:
            assert all(i.date_time == (2026, 1, 1, 0, 0, 0) for i in zf.infolist())
            assert b"<f>" not in zf.read("xl/worksheets/sheet1.xml")
        wb = openpyxl.load_workbook(io.BytesIO(clinic.files[n]), read_only=True)
        assert str(wb.properties.modified) == "2026-01-01 00:00:00"


def _truth(clinic):
    return {p["patient_id"]: p for p in clinic.truth["patients"]}


def test_weekdays_only_patients_never_log_on_weekends():
    c = simulate(SynthConfig(patients=60, weeks=3, seed=2, bad_share=0.0))
    truth = _truth(c)
    ids = [p for p, t in truth.items() if t["adherence"]["habit_before_dropout"] == "weekdays_only"]
    assert ids
    s = c.sessions[c.sessions["patient_id"].isin(ids)]
    assert (s["day"].dt.day_of_week < 5).all()


def test_dropouts_stop_for_good(clinic):
    truth = _truth(clinic)
    dropouts = [t for t in truth.values() if t["adherence"]["habit"] == "dropout"]
    assert dropouts
    days = clinic.config.days
    pts = clinic.patients.set_index("patient_id")["programme_start"]
    for t in dropouts:
        pid, drop = t["patient_id"], t["adherence"]["dropout_day"]
        assert days - drop >= 21
        for frame in (clinic.sessions, clinic.pain):
            mine = frame[frame["patient_id"] == pid]
            offset = (mine["day"] - pts[pid]).dt.days
            assert (offset < drop).all()
            last = offset.max() if len(mine) else -1
            assert days - 1 - last >= 21


def test_capacity_grows_only_while_pain_is_low(clinic):
    hinge = clinic.truth["effects"]["capacity_gain_on_pain"]["pain_hinge_nrs"]
    grew_somewhere = False
    for t in clinic.truth["patients"]:
        cap = np.array(t["capacity"]["weekly_start"])
        pain = np.array(t["pain"]["weekly_true_mean"])
        gain = np.diff(cap)[: len(pain)]
        assert (gain >= -1e-3).all()
        assert (gain[pain >= hinge] <= 1e-3).all()
        grew_somewhere |= bool((gain > 0.01).any())
    assert grew_somewhere


def test_truth_per_patient_is_complete(clinic):
    for t in clinic.truth["patients"]:
        assert t["verdict"]["expected"] in VERDICTS
        assert t["pain"]["trajectory"] in (
            "responder",
            "slow_responder",
            "non_responder",
            "flare_prone",
        )
        assert 0 <= t["adherence"]["routine_share"] <= 1
        assert set(t["adherence"]["exercise_share"]) == set(load_protocol().exercise_ids)
        assert 0 <= t["timing"]["preferred_minute"] < 1440
    effects = clinic.truth["effects"]
    assert effects["pain_slope_on_adherence"]["beta_points_per_week_per_unit_adherence"] == -0.4


def test_knee_to_chest_one_knee_at_a_time_first(clinic):
    truth = _truth(clinic)
    k2c = clinic.sessions[clinic.sessions["exercise_id"] == "knee_to_chest"]
    pts = clinic.patients.set_index("patient_id")["programme_start"]
    week = (k2c["day"] - pts[k2c["patient_id"]].to_numpy()).dt.days // 7
    single = week < [truth[p]["adherence"]["knee_to_chest_single_weeks"] for p in k2c["patient_id"]]
    assert k2c.loc[single, "side"].isin(["left", "right"]).all()
    assert (k2c.loc[~single, "side"] == "both").all()


def test_diary_session_pain_leg_pain_and_dose_behave_like_patients(clinic):
    s, p = clinic.sessions, clinic.pain
    session_days = set(zip(s["patient_id"], s["day"], strict=True))
    diary_days = set(zip(p["patient_id"], p["day"], strict=True))
    # Diary completeness is not adherence: each exists without the other.
    assert session_days - diary_days and diary_days - session_days
    # Pain before a session tracks the day's diary pain.
    first = s[s["exercise_id"] == "breathing"].dropna(subset=["pain_before"])
    both = first.merge(p, on=["patient_id", "day"])
    r = np.corrcoef(both["pain_before"].astype(float), both["back_pain"].astype(float))[0, 1]
    assert r > 0.7
    # Sciatica: diary leg pain is higher on days with a sciatic floss.
    truth = _truth(clinic)
    sci = p[p["patient_id"].map(lambda x: truth[x]["pain"]["sciatica"])].dropna(subset=["leg_pain"])
    fl = s[s["exercise_id"] == "sciatic_floss"]
    floss = set(zip(fl["patient_id"], fl["day"], strict=True))
    on = np.array([(a, b) in floss for a, b in zip(sci["patient_id"], sci["day"], strict=True)])
    assert sci["leg_pain"][on].mean() > sci["leg_pain"][~on].mean()
    # Doses below and above the prescription (10 breaths).
    breaths = s.loc[s["exercise_id"] == "breathing", "reps"]
    assert (breaths < 8).any() and (breaths > 12).any() and (breaths == 10).mean() > 0.7
    assert b"15,0" in b"".join(clinic.files.values())  # decimal comma in a ';' CSV


def test_cli_synth_writes_the_clinic(tmp_path):
    from backcare_analytics.cli import main

    assert main(["synth", "--patients", "3", "--weeks", "2", "--out", str(tmp_path)]) == 0
    truth = json.loads((tmp_path / "ground_truth.json").read_text(encoding="utf-8"))
    assert truth["config"]["patients"] == 3
    assert (tmp_path / "exports" / "patients.csv").exists()


@pytest.fixture(scope="module")
def big_clinic():
    """200 patients x 12 weeks, seed 7: the size on which the planted effects are recovered."""
    c = simulate(SynthConfig(patients=200, weeks=12, seed=7))
    pts = c.patients.set_index("patient_id")["programme_start"]
    for frame in (c.sessions, c.pain):
        frame["t_day"] = (frame["day"] - pts[frame["patient_id"]].to_numpy()).dt.days
    return c


@pytest.mark.slow
def test_planted_pain_slope_on_adherence_is_recovered(big_clinic):
    """A mixed model on the diary recovers beta within its 95 % CI."""
    import warnings

    import statsmodels.formula.api as smf

    c = big_clinic
    pain = c.pain.assign(t=c.pain["t_day"] / 7)
    adh = {p: t["adherence"]["routine_share_active_days"] for p, t in _truth(c).items()}
    pain["adh_c"] = pain["patient_id"].map(adh) - c.config.adherence_ref
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = smf.mixedlm(
            "back_pain ~ t + t:adh_c", pain, groups=pain["patient_id"], re_formula="~t"
        ).fit()
    lo, hi = fit.conf_int().loc["t:adh_c"]
    assert lo <= c.config.pain_slope_per_adherence <= hi


@pytest.mark.slow
def test_planted_capacity_gain_is_recovered_from_the_files(big_clinic):
    """Weekly bridge-hold gains regressed on adherence and weekly diary pain (below the hinge)
    recover g0 and gamma within their 95 % CIs."""
    import statsmodels.formula.api as smf

    c = big_clinic
    s, p = c.sessions.assign(w=c.sessions["t_day"] // 7), c.pain.assign(w=c.pain["t_day"] // 7)
    capacity = s[s["exercise_id"] == "bridge"].groupby(["patient_id", "w"])["hold_s"].mean() / 15
    share = s.groupby(["patient_id", "w"])["day"].nunique() / 7
    weekly_pain = p.groupby(["patient_id", "w"])["back_pain"].mean()
    df = pd.concat({"C": capacity, "a": share, "P": weekly_pain}, axis=1).reset_index()
    df["gain"] = df.groupby("patient_id")["C"].shift(-1) - df["C"]
    df = df.dropna()
    fit = smf.ols("gain ~ 0 + a + a:P", df[df["P"] < 5]).fit()
    ci = fit.conf_int()
    assert ci.loc["a", 0] <= c.config.capacity_gain_max <= ci.loc["a", 1]
    assert ci.loc["a:P", 0] <= -c.config.capacity_gain_per_pain_point <= ci.loc["a:P", 1]


@pytest.mark.slow
def test_planted_dropout_hazard_is_recovered_from_the_files(big_clinic):
    """Cox model of dropout (no log for >= 21 days until the end) on the first week's diary
    mean recovers the hazard ratio per pain point within its 95 % CI."""
    import lifelines

    c = big_clinic
    days = c.config.days
    logs = pd.concat([c.sessions[["patient_id", "t_day"]], c.pain[["patient_id", "t_day"]]])
    last = logs.groupby("patient_id")["t_day"].max()
    first_week = c.pain[c.pain["t_day"] < 7].groupby("patient_id")["back_pain"].mean()
    event = (days - 1 - last) >= 21
    weeks_at_risk = np.where(event, (last + 1 - 7) / 7, (days - 21 - 7) / 7)
    df = pd.DataFrame(
        {"T": np.maximum(weeks_at_risk, 0.01), "E": event.astype(int), "pain": first_week}
    ).dropna()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines' own pandas deprecation warnings
        s = lifelines.CoxPHFitter().fit(df, "T", "E").summary.loc["pain"]
    hr = c.config.dropout_hazard_ratio_per_pain_point
    assert s["exp(coef) lower 95%"] <= hr <= s["exp(coef) upper 95%"]


@pytest.mark.slow
def test_the_importer_reproduces_the_ground_truth(tmp_path):
    """End to end: importing the files gives the expected counts per file and stores exactly
    the clean frames (the importer is another engineer's code; this pins the contract)."""
    from backcare_analytics.io import importer
    from backcare_analytics.store.core import Store

    cfg = SynthConfig(patients=8, weeks=6, seed=4, bad_share=0.03, start=date(2026, 3, 2))
    clinic = simulate(cfg)
    generate_clinic(cfg, tmp_path / "clinic")
    store = Store(tmp_path / "store.duckdb")
    report = importer.import_paths([tmp_path / "clinic" / "exports"], store)
    got = {r.path.replace("\\", "/").rsplit("/", 1)[-1]: r for r in report.files}
    for f in clinic.truth["files"]:
        r = got[f["file"].rsplit("/", 1)[-1]]
        assert (r.rows_read, r.rejected, r.duplicates) == (
            f["rows_read"],
            f["rejected"],
            f["duplicates"],
        ), f["file"]
    keys = {
        "sessions": ["patient_id", "performed_at", "exercise_id", "side"],
        "pain": ["patient_id", "recorded_at"],
    }
    for kind, frame in (("sessions", clinic.sessions), ("pain", clinic.pain)):
        stored = getattr(store, kind)()[list(frame.columns)]
        pd.testing.assert_frame_equal(
            stored.sort_values(keys[kind]).reset_index(drop=True),
            frame.sort_values(keys[kind]).reset_index(drop=True),
            check_dtype=False,
        )
