"""The information report's parts: the database read, the events' summaries, the timeline,
phone masking. `dispatcher.report` puts them together and renders them."""
