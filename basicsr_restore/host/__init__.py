"""What changes inside basicsr, and the only place that touches its internals: the compat fixes, the helpers swapped
into basicsr's runners, the option checks that run before a run starts, and the plugin's registration entry point
(``basicsr.plugins``)."""
