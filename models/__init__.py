"""Neural transforms (analysis / synthesis networks, hyperpriors) that codecs compose with quantizers and
entropy models. The image and audio models arrive with their codecs; see the README's roadmap."""
