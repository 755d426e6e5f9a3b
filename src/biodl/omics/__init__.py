"""Models and analyses of expression data (the TCGA melanoma study): cross-validated classifiers
and Cox models on the most variable genes (``expression_models``), and clustering of samples
(``clustering``)."""
