"""maskwatch training side: data, augmentation, detector models, training, evaluation, export."""
