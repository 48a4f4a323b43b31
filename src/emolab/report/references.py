"""Published reference numbers (from the project's REFERENCES.md), with their split and averaging, and
citations for datasets, models and libraries."""

from __future__ import annotations

# dataset -> rows of (model, metric, value, split / averaging, source)
PUBLISHED: dict[str, list[tuple[str, str, float, str, str]]] = {
    "emotion": [
        ("distilbert-base-uncased-emotion", "accuracy", 0.927, "test", "HF model card bhadresh-savani/distilbert-base-uncased-emotion"),
        ("distilbert-base-uncased-emotion", "macro_f1", 0.883, "test, macro", "HF evaluation results"),
        ("roberta-base-emotion", "accuracy", 0.931, "test", "bhadresh-savani/roberta-base-emotion"),
        ("roberta-base-emotion", "macro_f1", 0.882, "test, macro", "bhadresh-savani/roberta-base-emotion"),
        ("albert-base-v2-emotion", "accuracy", 0.936, "test", "bhadresh-savani/albert-base-v2-emotion"),
        ("deberta-v3-base", "accuracy", 0.9255, "test", "Emanuel/twitter-emotion-deberta-v3-base"),
        ("deberta-v3-base", "macro_f1", 0.879, "test, macro", "Emanuel/twitter-emotion-deberta-v3-base"),
        ("deberta-v3-large, mean pooling", "accuracy", 0.931, "test", "practitioner report (seed 000)"),
    ],
    "goemotions/original": [
        ("BERT-base (paper)", "macro_f1", 0.46, "test, macro, multi-label", "Demszky et al. 2020"),
        ("BERT-base (reproduction)", "macro_f1", 0.4876, "test, macro, multi-label", "monologg/GoEmotions-pytorch"),
    ],
    "goemotions/ekman": [
        ("BERT-base (paper)", "macro_f1", 0.64, "test, macro, multi-label", "Demszky et al. 2020"),
        ("BERT-base (reproduction)", "macro_f1", 0.6148, "test, macro, multi-label", "monologg/GoEmotions-pytorch"),
    ],
    "goemotions/sentiment": [
        ("BERT-base (paper)", "macro_f1", 0.69, "test, macro, multi-label", "Demszky et al. 2020"),
        ("BERT-base (reproduction)", "macro_f1", 0.6717, "test, macro, multi-label", "monologg/GoEmotions-pytorch"),
    ],
    "sst2": [
        ("DistilBERT", "accuracy", 0.913, "GLUE dev", "Sanh et al. 2019 (HF-verified 0.9106)"),
        ("BERT-base", "accuracy", 0.927, "GLUE dev", "Devlin et al. 2019"),
        ("RoBERTa-base", "accuracy", 0.948, "GLUE dev", "Liu et al. 2019"),
        ("DeBERTa-v3-large", "accuracy", 0.969, "GLUE dev", "He et al. 2021"),
    ],
    "fer2013": [
        ("human", "accuracy", 0.65, "PrivateTest", "Goodfellow et al. 2013"),
        ("2013 challenge winner", "accuracy", 0.712, "PrivateTest", "Tang 2013"),
        ("VGG variant", "accuracy", 0.7328, "PrivateTest", "Khaireddin & Chen 2021"),
    ],
    "ferplus": [
        ("VGG13, majority-vote labels", "accuracy", 0.84, "FER+ test (PrivateTest rows)",
         "Barsoum et al. 2016 (0.84-0.85)"),
    ],
}

# what emolab's test split is called in the published tables, per dataset (others: "test")
TEST_SPLIT = {"sst2": "GLUE dev", "fer2013": "PrivateTest", "ferplus": "FER+ test (PrivateTest rows)"}

# parameters of the published models, where their papers or cards state them (for the reasons a run is behind)
PUBLISHED_PARAMETERS = {
    "distilbert-base-uncased-emotion": 66e6, "roberta-base-emotion": 125e6, "albert-base-v2-emotion": 12e6,
    "deberta-v3-base": 184e6, "deberta-v3-large, mean pooling": 435e6, "BERT-base (paper)": 110e6,
    "BERT-base (reproduction)": 110e6, "DistilBERT": 66e6, "BERT-base": 110e6, "RoBERTa-base": 125e6,
    "DeBERTa-v3-large": 435e6,
}

# the datasets' Hugging Face Hub ids, for model cards
DATASET_HUB_IDS = {"emotion": "dair-ai/emotion", "goemotions": "google-research-datasets/go_emotions",
                   "sst2": "stanfordnlp/sst2", "fer2013": "fer2013", "ferplus": "ferplus"}

DATASET_CITATIONS = {
    "emotion": "Saravia et al. (2018). CARER: Contextualized Affect Representations for Emotion Recognition. EMNLP.",
    "goemotions": "Demszky et al. (2020). GoEmotions: A Dataset of Fine-Grained Emotions. ACL.",
    "sst2": "Socher et al. (2013). Recursive Deep Models for Semantic Compositionality Over a Sentiment Treebank. "
            "EMNLP; Wang et al. (2019). GLUE. ICLR.",
    "fer2013": "Goodfellow et al. (2013). Challenges in Representation Learning: A report on three machine "
               "learning contests. arXiv:1307.0414.",
    "ferplus": "Barsoum et al. (2016). Training Deep Networks for Facial Expression Recognition with Crowd-Sourced "
               "Label Distribution. ICMI; images from Goodfellow et al. (2013), arXiv:1307.0414.",
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


def reference_key(data_cfg: dict) -> str:
    name = data_cfg.get("name", "")
    return f"goemotions/{data_cfg.get('taxonomy', 'original')}" if name == "goemotions" else name
