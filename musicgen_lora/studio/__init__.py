"""Studio: prepare, train, listen and share from a local web page (Gradio).

    python -m musicgen_lora.studio [--host 127.0.0.1] [--port 7860] [--projects_dir studio_projects] [--share]

A thin layer over the project's commands: data preparation runs ``python -m musicgen_lora.prepare``, training
``python finetune_musicgen.py`` (in its own process, so the page stays responsive and a crash of training never takes
it down), rendering and merging ``python -m musicgen_lora.generate``, evaluation ``python evaluate.py`` and publishing
``python -m musicgen_lora.push``. Modules:

- :mod:`.backend` — the only module that imports the package's own functions (demo assets, config checks, captions).
- :mod:`.project` — a project folder: its layout, the config written from the form, caption edits, uploads.
- :mod:`.runs` — the run manager: subprocesses, one run per project (lock), stop and resume, their logs.
- :mod:`.progress` — reads a training log: progress, time left, losses per step.
- :mod:`.handlers` — what each button does, in plain Python (tested without a browser).
- :mod:`.app` — the Gradio page (the only module that imports ``gradio``).
"""
