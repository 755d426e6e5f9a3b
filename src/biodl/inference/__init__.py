"""Using a trained run: one :class:`~biodl.inference.predictor.Predictor` that predict,
evaluate, explain, export, calibrate and slide inference all share."""
