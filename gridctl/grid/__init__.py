"""Feeders, household→bus mapping, sensitivities and AC verification, on pandapower.

pandapower works in MW / MVar; gridctl works in W / var. The conversion happens in this
package, with ``W_PER_MW``, and nowhere else.
"""

W_PER_MW = 1e6
"""Watts per megawatt (also var per MVar, VA per MVA)."""
V_UPU_MAX = 2_000_000
"""Largest voltage stored or sent, µp.u. (2 p.u.; within a 32-bit integer)."""
LOADING_PPM_MAX = 100_000_000
"""Largest branch loading stored or sent, parts per million of the rating (10,000 %)."""
