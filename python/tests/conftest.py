# The package under test is python/distill, imported from the source tree; its first import builds
# the C++ extension (cached under build/python/).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
