"""Views of the fusion node's beliefs for people: object markers (markers), the latent-space image with
class regions and the re-encoding statistics of the paper's Fig. 5d (latent_view), what the model imagines
each object shows to each sensor (imagination), training curves (curves), and the `m2vae plot` command that
writes them to PNG (plot). No rclpy import here: the viz node converts these to messages."""

# What the latent image's heatmap can show after the auto re-encodings: the summed posterior variance
# (paper Fig. 5d) or the drift of the mean (Fig. 5c). Here, not in latent_view, so the CLI's --help needs no torch.
HEATMAPS = ("variance", "drift")
