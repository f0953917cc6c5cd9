"""Predict: upload photos or a short video; faces, emotions, charts and downloads."""

import dashboard  # noqa: F401  (first: import-order guard, see dashboard/__init__.py)

# isort: split
import streamlit as st

from dashboard import predict_ui as ui
from dashboard import resources
from fer_core.card import CardError
from fer_core.drawing import annotate
from fer_core.images import ImageError
from fer_core.video import VIDEO_EXTENSIONS, VideoError, analyse_video

st.set_page_config(page_title="Predict", layout="wide")
st.title("Predict")
settings = ui.detector_ui()
try:
    base = resources.load_recognizer(resources.inference_model_path(), settings["tta"])
except (CardError, ValueError) as exc:
    st.error(f"{exc}")
    st.stop()
try:
    det = resources.detector(settings["detector"], **settings["settings"])
except ValueError as exc:  # e.g. the BlazeFace package is missing: say what to install
    st.error(str(exc))
    st.stop()
rec = base.with_detector(det)
rec.align = settings["align"]
st.caption(f"Model: {rec.model_path.name} ({rec.card.get('name', '?')}), test-time augmentation: {rec.tta}")
photos_tab, video_tab = st.tabs(["Photos", "Video"])

with photos_tab:
    files = st.file_uploader(
        "Photos (jpg, png, webp, bmp, gif)",
        type=["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"],
        accept_multiple_files=True,
    )
    c1, c2 = st.columns(2)
    cropped = c1.checkbox(
        "These are already cropped faces (FER-2013 style)", help="Skip detection; one face per image."
    )
    want_cam = c2.checkbox("Show Grad-CAM", help="Which parts of each face drove the predicted emotion.")
    entries, images = [], {}
    # Each photo is analysed once per (bytes, model, settings); a click or another upload reuses it.
    rec_key = f"{rec.model_path}|{resources._mtime(rec.model_path)}|{sorted(settings.items(), key=str)}"
    for up, name in zip(files or [], ui.unique_names([up.name for up in files or []]), strict=True):
        digest = resources.upload_digest(up.getvalue())
        try:
            rgb, faces = resources.photo_faces(digest, rec_key, cropped, rec, up.getvalue(), name)
        except ImageError as exc:  # the message starts with the file's name
            st.error(str(exc))
            continue
        entries.append({"image": name, "faces": [f.to_json() for f in faces]})
        images[name] = (rgb, faces, digest)
    for entry in entries:
        rgb, faces, digest = images[entry["image"]]
        st.subheader(entry["image"])
        if not faces:
            st.info(
                "No face found. Try a smaller 'Smallest face', a lower 'Confidence' or another detector in the sidebar, "
                "or tick 'already cropped faces'."
            )
            st.image(rgb, width=480)
            continue
        left, right = st.columns([3, 2])
        jpeg = resources.annotated_photo(digest, rec_key, cropped, settings["landmarks"], rgb, faces, rec.labels)
        left.image(jpeg, width="stretch")
        left.download_button(
            "Annotated image (PNG)",
            # drawn again and PNG-encoded when clicked, not on every rerun
            lambda rgb=rgb, faces=faces: ui.png_bytes(
                annotate(rgb, faces, rec.labels, landmarks=settings["landmarks"])
            ),
            file_name=f"{entry['image'].rsplit('.', 1)[0]}_annotated.png",
            key=f"png-{entry['image']}",
        )
        right.plotly_chart(ui.probability_figure(entry["faces"], rec.labels), width="stretch")
        if want_cam:
            cams = resources.photo_gradcams(digest, rec_key, cropped, rec, rgb, faces)
            if cams is None:
                st.info("Grad-CAM is not available for this model.")
            else:
                cols = st.columns(min(len(cams), 6))
                for i, cam in enumerate(cams):
                    cols[i % len(cols)].image(cam, caption=f"face {i + 1}: {faces[i].emotion}", width=144)
    if entries:
        table = ui.faces_table(entries)
        st.subheader("All faces")
        if table.empty:
            st.write("No faces in these images.")
        else:
            st.dataframe(table, hide_index=True, width="stretch")
        d1, d2 = st.columns(2)
        d1.download_button("Results (JSON)", ui.json_bytes(entries), file_name="faces.json", mime="application/json")
        d2.download_button("Results (CSV)", ui.csv_bytes(table), file_name="faces.csv", mime="text/csv")

with video_tab:
    video = st.file_uploader("A short video (mp4, webm, avi, mov, mkv)", type=[e[1:] for e in sorted(VIDEO_EXTENSIONS)])
    every = st.slider("Seconds between analysed frames", 0.1, 2.0, 0.5, 0.1)
    smooth = st.checkbox("Smooth emotions over time (per face)", value=True)
    if video is not None and st.button("Analyse video", type="primary"):
        bar = st.progress(0.0, text="Analysing...")
        try:
            results = analyse_video(
                video.getvalue(),
                rec,
                every=every,
                name=video.name,
                smooth=0.4 if smooth else None,
                progress=lambda f: bar.progress(f, text=f"Analysing... {f:.0%}"),
            )
        except VideoError as exc:
            results = None
            st.error(str(exc))
        bar.empty()
        st.session_state["video_results"] = (video.file_id, every, results)
    kept = st.session_state.get("video_results")
    # Moving the slider keeps the last results on screen (they say which interval they used)
    # until "Analyse video" is pressed again.
    results = kept[2] if video is not None and kept and kept[0] == video.file_id else None
    if results and kept[1] != every:
        st.caption(f"These results used one frame every {kept[1]} s; press 'Analyse video' to use {every} s.")
    if results:
        n_face = sum(1 for r in results if r["faces"])
        st.write(f"{len(results)} frames analysed, {n_face} with a face.")
        if n_face == 0:
            st.info("No face found in this video.")
        else:
            most = max(len(r["faces"]) for r in results)
            face = (
                st.selectbox("Face (left to right)", range(most), format_func=lambda i: f"face {i + 1}")
                if most > 1
                else 0
            )
            st.plotly_chart(ui.timeline_figure(results, rec.labels, face), width="stretch")
            st.plotly_chart(ui.emotion_strip(results, rec.labels, face), width="stretch")
        table = ui.faces_table(results)
        v1, v2 = st.columns(2)
        v1.download_button("Per-frame emotions (CSV)", ui.csv_bytes(table), file_name="video_emotions.csv")
        v2.download_button("Per-frame emotions (JSON)", ui.json_bytes(results), file_name="video_emotions.json")
