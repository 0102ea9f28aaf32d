"""The synthetic moving-shapes world: scenes, renderer, captions and QA, dataset export, rule judge."""

from llava_video.synthetic.export import ExportConfig, export_dataset, write_example
from llava_video.synthetic.language import QA, image_caption, image_questions, video_caption, video_questions
from llava_video.synthetic.rule_judge import score_answer
from llava_video.synthetic.samples import SyntheticDataset, make_image_sample, make_video_sample
from llava_video.synthetic.world import Scene, SceneObject, WorldConfig, render_clip, render_frame, sample_scene

__all__ = [
    "ExportConfig",
    "export_dataset",
    "write_example",
    "QA",
    "video_caption",
    "image_caption",
    "video_questions",
    "image_questions",
    "score_answer",
    "SyntheticDataset",
    "make_video_sample",
    "make_image_sample",
    "Scene",
    "SceneObject",
    "WorldConfig",
    "sample_scene",
    "render_clip",
    "render_frame",
]
