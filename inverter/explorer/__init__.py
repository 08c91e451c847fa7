"""The explorer: a local web app over fixed models (`invert-onnx serve`) and its static export
(`invert-onnx graph --format html`): the layer graph laid out by Graphviz, inversions started from
a click, their progress streamed live, finished runs cached on disk."""
