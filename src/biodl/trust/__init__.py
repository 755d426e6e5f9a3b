"""Trust in a classifier's probabilities, fitted on held-out cases only: recalibration
(``calibration``), conformal prediction sets (``conformal``) and each case's uncertainty with
referral to a human (``uncertainty``). Imports only ``biodl.evaluation`` and ``biodl.errors``;
a run's ``calibration.json`` and ``conformal.json`` are read and written by ``biodl.runs``."""
