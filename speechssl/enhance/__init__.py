"""Speech enhancement: noise simulation, models, Noise2Noise-style training and metrics
(PESQ, STOI, SI-SDR in :mod:`speechssl.enhance.metrics`)."""
