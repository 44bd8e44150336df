"""From a create body to a batch draft: templates, `{{variables}}`, schedules, the price quote."""
