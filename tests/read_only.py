"""Test helper: a file or folder that even root cannot change while the block runs."""

import os
import subprocess

import pytest


class read_only:
    """chattr +i as root (chmod does not stop root), chmod otherwise; skips the test if neither works."""

    def __init__(self, path):
        self.path = str(path)

    def __enter__(self):
        if os.geteuid() == 0:
            if subprocess.run(["chattr", "+i", self.path], capture_output=True).returncode != 0:
                pytest.skip("chattr +i is not available here")
        else:
            self.mode = os.stat(self.path).st_mode
            os.chmod(self.path, 0o555 if os.path.isdir(self.path) else 0o444)
        return self.path

    def __exit__(self, *exc):
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", self.path], check=True)
        else:
            os.chmod(self.path, self.mode)
