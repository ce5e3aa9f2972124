"""Cross-cutting pieces every package needs: errors users can fix, logging, clocks."""
