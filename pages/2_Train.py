"""Train: launch, watch, stop and resume training runs (each in its own process); compare runs."""

import streamlit as st

import dashboard  # noqa: F401  (import-order guard, see dashboard/__init__.py)
from dashboard import figures, resources
from dashboard.train_ui import chance_warning, clean_log, config_form, format_eta, progress_summary, runs_rows
from dashboard.widgets import dataset_ui
from fer_core import jobs, runs
from fer_core.card import card_path
from fer_core.constants import EMOTIONS

st.set_page_config(page_title="Train", layout="wide")
RUNS_DIR = resources.RUNS_DIR
st.title("Train")
data_root = dataset_ui()
st.caption(
    f"Runs folder: `{RUNS_DIR}` (set FER_RUNS to change). Training runs in its own process; "
    "closing the browser does not stop it."
)

tab_new, tab_runs, tab_compare = st.tabs(["New run", "Runs", "Compare"])

with tab_new:
    st.write(f"Dataset: `{data_root}`")
    try:
        cfg = config_form(data_root, resources.MODELS_DIR, RUNS_DIR)
    except ValueError as exc:
        st.error(str(exc))
        cfg = None
    if cfg is not None:
        try:
            run_dir = jobs.launch(cfg, RUNS_DIR, st.session_state.get("new_run_name"))
            st.session_state["selected_run"] = run_dir.name
            st.success(f"Launched {run_dir.name}; follow it on the Runs tab.")
        except jobs.JobError as exc:
            st.error(str(exc))

all_runs = runs.list_runs(RUNS_DIR)

with tab_runs:
    if not all_runs:
        st.info("No runs yet: launch one on the New run tab (or `python -m fer_core train --data ROOT`).")
    else:

        @st.fragment(run_every=5.0)
        def runs_table():
            st.dataframe(runs_rows(runs.list_runs(RUNS_DIR)), hide_index=True, width="stretch")

        runs_table()
        for r in all_runs:
            if r["problems"]:
                st.warning(f"{r['run']}: " + " ".join(r["problems"]))
        names = [r["run"] for r in all_runs]
        chosen = st.selectbox(
            "Run",
            names,
            index=names.index(st.session_state.get("selected_run", names[0]))
            if st.session_state.get("selected_run") in names
            else 0,
        )
        st.session_state["selected_run"] = chosen
        run_dir = RUNS_DIR / chosen

        @st.fragment(run_every=2.0)
        def live_view():
            status = runs.read_status(run_dir)
            epochs, progress = runs.read_metrics(run_dir)
            total = runs.read_json_object(run_dir / runs.CONFIG_FILE).get("epochs")
            total = total if isinstance(total, int) else 0
            state = status.get("state", "unknown")
            c1, c2, c3, c4, c5 = st.columns([1, 1, 1, 1, 2])
            s = progress_summary(status, epochs, progress, total)
            c1.metric("State", state)
            c2.metric("Epoch", f"{s['epoch']} of {s['epochs']}")
            c3.metric("Images/s", f"{s['images_per_s']:.0f}" if s["images_per_s"] else "–")
            c4.metric("ETA", format_eta(s["eta_s"]))
            with c5:
                b1, b2 = st.columns(2)
                if b1.button("Stop", disabled=state not in ("running", "queued"), key="stop"):
                    try:
                        jobs.request_stop(run_dir)
                        st.toast("Stop requested: the run ends after the current batch.")
                    except jobs.JobError as exc:
                        st.error(str(exc))
                if b2.button("Resume", disabled=state not in ("stopped", "failed"), key="resume"):
                    try:
                        jobs.launch(None, RUNS_DIR, chosen, resume=True)
                        st.toast(f"Resuming {chosen}.")
                    except jobs.JobError as exc:
                        st.error(str(exc))
            if state in ("running", "queued"):
                st.progress(
                    s["batch_fraction"],
                    text=f"batch {progress['step']} of {progress['steps']}"
                    if progress
                    else "waiting for the first batch...",
                )
            if state == "failed":
                st.error(f"The run failed: {status.get('error') or 'see the log'}")
                st.code(clean_log(runs.tail(run_dir / runs.LOG_FILE, 60))[0] or "(no log)", language="text")
            warning = chance_warning(
                epochs, len(runs.read_json_object(card_path(run_dir / runs.MODEL_FILE)).get("labels") or EMOTIONS)
            )
            if warning:
                st.warning(warning)
            if epochs:
                st.plotly_chart(figures.training_curves(epochs), width="stretch", key="curves")
            ev = status.get("eval") or {}
            for split, m in ev.items():
                st.success(f"{split}: accuracy {m['accuracy']:.1%} on {m['n']} faces ({m['tta']} TTA)")
            with st.expander("Log"):
                log, hidden = clean_log(runs.tail(run_dir / runs.LOG_FILE, 200))
                st.code("\n".join(log.splitlines()[-40:]) or "(no log yet)", language="text")
                if hidden:
                    st.caption(
                        f"{hidden} start-up lines from TensorFlow hidden (they are in {run_dir / runs.LOG_FILE})."
                    )

        live_view()

with tab_compare:
    names = [r["run"] for r in all_runs if r["epoch"]]
    picked = st.multiselect("Runs to compare", names, default=names[:2])
    metric = st.selectbox("Metric", ["val_accuracy", "accuracy", "val_loss", "loss", "lr"])
    if picked:
        curves = {n: runs.read_metrics(RUNS_DIR / n)[0] for n in picked}
        st.plotly_chart(figures.compare_curves(curves, metric), width="stretch")
        rows = []
        for n in picked:
            cfg = runs.read_json_object(RUNS_DIR / n / runs.CONFIG_FILE)
            best = max((e.get("val_accuracy") or 0 for e in curves[n]), default=None)
            rows.append(
                {
                    "run": n,
                    "best val_accuracy": best,
                    **{
                        k: cfg.get(k)
                        for k in (
                            "arch",
                            "width",
                            "epochs",
                            "batch_size",
                            "optimizer",
                            "learning_rate",
                            "schedule",
                            "augment",
                            "class_weights",
                            "label_smoothing",
                        )
                    },
                }
            )
        st.dataframe(rows, hide_index=True, width="stretch")
