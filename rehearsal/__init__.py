"""The deploy rehearsal (`make rehearse`): the synthesized stack on moto's CloudFormation, IAM enforced."""
