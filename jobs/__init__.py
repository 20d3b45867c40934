"""The jobs layer: runs queued Safe-CB jobs with `safecb` and records what the rounds make in the
store (`db`). It sits between the library and the studio and never imports gradio or `ui`."""
