"""What the tests share: a recording SMTP sink (`sink.py`) and real processes and servers (`processes.py`)."""
