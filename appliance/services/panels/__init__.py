"""The overview's panels, one module each (appliance/services/overview.py loads every module here).

A later feature adds its panel by adding a module that calls ``overview.panel(...)`` and a template
``web/templates/panels/<key>.html``. Pre-clearance requests waiting and certifications due or late belong to the
pre-clearance and attestation features and arrive with them.
"""
