"""Studio: prepare, train, listen, evaluate and share from a local web page (Gradio).

    python -m musicgen_lora.studio [--host 127.0.0.1] [--port 7860] [--projects_dir studio_projects] [--share]

A thin layer over the package's commands, which it starts as ``python -m musicgen_lora.<command>`` (so an installed
package works without a checkout): data preparation ``prepare``, training ``train`` (in its own process, so the page
stays responsive and a crash of training never takes it down), rendering and merging ``generate``, evaluation
``evaluate`` and publishing ``push``. Modules:

- :mod:`.backend` — the only module that imports the package's own functions (demo assets, config checks, captions).
- :mod:`.project` — a project folder: its layout, the config written from the form, rename, delete, run history.
- :mod:`.dataset_files` — the audio folder's files edited from the page: captions, exclusions, uploads.
- :mod:`.presets` — presets, memory profiles, the command line the form runs.
- :mod:`.runs` and :mod:`.supervise` — the run manager: subprocesses, one run per project (lock), stop and resume,
  their logs and exit status.
- :mod:`.progress` — a run's progress: ``progress.jsonl`` for training, progress bars for preparation, log tails.
- :mod:`.views` and :mod:`.evaluation` — what the page shows, as plain data.
- :mod:`.handlers` and :mod:`.outputs` — what each button does, in plain Python (tested without a browser).
- :mod:`.page` — the Gradio page (the only part that imports ``gradio``).
"""
