# SPDX-License-Identifier: MIT
"""Policy sweeps (filled below)."""
