"""Label sets that code outside the dataset loaders names: FER2013's seven expressions, in the dataset's
label-id order (``emotion`` 0-6), which the FER2013 loader assigns and the pretrained reference CNN predicts."""

FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
