"""Feeders, household→bus mapping, sensitivities and AC verification, on pandapower.

pandapower works in MW / MVar; gridctl works in W / var. The conversion happens in this
package, with ``W_PER_MW``, and nowhere else.
"""

W_PER_MW = 1e6
"""Watts per megawatt (also var per MVar, VA per MVA)."""
