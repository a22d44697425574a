"""DeepMixing environment package: data, audio features, the Gymnasium env, baselines."""
