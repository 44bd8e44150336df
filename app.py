#!/usr/bin/env python3
"""CDK entry point: `cdk synth` / `cdk deploy` (see the README, section Deploying to AWS)."""

from infra.stack import build_app

if __name__ == "__main__":
    app, _ = build_app()
    app.synth()
