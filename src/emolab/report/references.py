"""Citations for models and libraries, and the sizes of published models (for the reasons a run is behind).
Each dataset's citation and published scores live in its descriptor (:class:`emolab.data.DatasetSpec`, beside
its loader in ``emolab/data/``)."""

from __future__ import annotations

# parameters of the published models, where their papers or cards state them (for the reasons a run is behind)
PUBLISHED_PARAMETERS = {
    "distilbert-base-uncased-emotion": 66e6, "roberta-base-emotion": 125e6, "albert-base-v2-emotion": 12e6,
    "deberta-v3-base": 184e6, "deberta-v3-large, mean pooling": 435e6, "BERT-base (paper)": 110e6,
    "BERT-base (reproduction)": 110e6, "DistilBERT": 66e6, "BERT-base": 110e6, "RoBERTa-base": 125e6,
    "DeBERTa-v3-large": 435e6,
}

MODEL_CITATIONS = {
    "minilm-l6": "Wang et al. (2020). MiniLM: Deep Self-Attention Distillation. NeurIPS; sentence-transformers/"
                 "all-MiniLM-L6-v2 (Reimers & Gurevych 2019, Sentence-BERT).",
    "mpnet-base": "Song et al. (2020). MPNet. NeurIPS; sentence-transformers/all-mpnet-base-v2.",
    "tfidf": "Pedregosa et al. (2011). Scikit-learn: Machine Learning in Python. JMLR.",
}

LIBRARY_CITATIONS = [
    "Wolf et al. (2020). Transformers: State-of-the-Art Natural Language Processing. EMNLP (demos).",
    "Gugger et al. (2022). Accelerate: Training and inference at scale made simple.",
    "Paszke et al. (2019). PyTorch: An Imperative Style, High-Performance Deep Learning Library. NeurIPS.",
    "Pedregosa et al. (2011). Scikit-learn: Machine Learning in Python. JMLR.",
    "Northcutt et al. (2021). Confident Learning: Estimating Uncertainty in Dataset Labels. JAIR (cleanlab).",
    "Mohammad & Turney (2013). Crowdsourcing a Word-Emotion Association Lexicon (NRC). Computational Intelligence.",
]

