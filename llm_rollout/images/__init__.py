"""Images: the vLLM serving image build context, its content tag, and the builders."""
