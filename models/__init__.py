"""Models as data: a layer list (``conf/model/*.yaml``) read by ``models.layers``, one builder per
framework (``torch_model``, ``tf_model``, ``jax_model``) and one shared numpy start (``models.init``)."""
